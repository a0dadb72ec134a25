"""The collector stage: eBPF capture of agent process trees, published on the bus (docs/collector.md).

Run it with ``python -m collector`` (root). Modules: ``loader`` (compile, attach, maps),
``btf_offsets`` (kernel struct offsets from BTF), ``decode`` (kernel record -> bus event),
``scope`` (which processes are traced; pure), ``proc_scan`` (/proc at start-up), ``config``.
"""
