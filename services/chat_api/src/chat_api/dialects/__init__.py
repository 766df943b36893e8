"""The two HTTP dialects: the original /api/v1/chat API and the OpenAI API."""
