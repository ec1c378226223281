"""What to scan: targets, ports, the safety guard, the request model and its builder.

Pure apart from DNS resolution (targets) and the kernel's routing table (safety).
"""
