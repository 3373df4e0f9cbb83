"""What a client worker does on command: hold subscribers, publish, make unary calls,
hold idle connections. Each job reports plain JSON-able dicts to the parent."""
