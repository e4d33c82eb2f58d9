"""``ponder mcp``: ponder's search as tools for agents and editors, over the Model Context Protocol
(:mod:`ponder.mcp.tools`: ``think``, ``solve_code``, the traces as resources)."""
