"""Model families; each folder is exactly the code a saved checkpoint carries as remote code."""
