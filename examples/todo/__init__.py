"""A collaborative todo list shared by two typed clients and one legacy JSON client.

    python -m examples.todo

starts a syncwire server on free ports (or uses one given with ``--grpc``/``--ws``),
then three people edit one list at the same time: alice with the typed client over
gRPC, bob with the typed client over WebSocket, and carol with a legacy JSON client
(plain WebSocket, ``{"type": "sync"}`` messages). Every edit is a small CRDT operation
(last-writer-wins registers ordered by Lamport stamps), so concurrent edits resolve the
same way everywhere; the example prints the list each of them ends with and exits 0
when all three converged.

    python -m examples.todo --web

serves the list as a web page (web/examples/todo/page.ts, the web `SyncClient`) with a
local server, and prints the page's URL and the command that runs the Python typed and
legacy JSON clients on the same list; the page shows the connection state and who is
present.
"""
