"""One engine per home: ownership, the endpoint, attached clients, the relay."""
