"""The context fields declared for rules (policy/expressions.py) that this analyzer does not
compute yet, in one place.

Each needs an event kind or field of bus schema 2 that the collector does not publish yet
(docs/bus.md §1); until a later phase computes it, the field exists in every context as false,
so a rule naming it evaluates (to no match) instead of erroring. tests/analyzer/test_context_fields.py
checks that this list and the computed fields together cover every declared field.

TODO(schema 2): compute these from the new kinds, then delete them here.
"""

from __future__ import annotations

__all__ = ["PENDING"]

PENDING: dict[str, str] = {
    "execution.reverse_shell": "exec `stdio` / `parent_stdio` (inet sockets on fds 0-2)",
    "execution.pipe_to_shell": "exec `stdio` pipe inodes paired with a network tool's stdout",
    "execution.loader_hijack": "exec `ld_env` (LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH)",
    "history.setuid_created": "`chmod` events (mode with S_ISUID / S_ISGID)",
    "history.foreign_process_read": "`ptrace`, `vm_read` and `target_in_tree` on /proc/<pid> opens",
    "history.udp_exfil": "`send` events (unconnected UDP, DNS query name hashes)",
    "history.raw_socket": "`socket` events (AF_PACKET, SOCK_RAW)",
    "history.bind_shell": "`bind` / `listen` events and exec `stdio`",
    "history.memfd_created": "`memfd` events (memfd_create)",
}
