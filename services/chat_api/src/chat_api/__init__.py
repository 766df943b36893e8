"""The chat API service: HTTP ⇄ domain use cases."""
