"""Implementations of the core's ports: SQL repositories, the OpenAI provider, the price
catalogue loader, the system clock, and in-memory fakes for tests."""
