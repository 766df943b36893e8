"""The operator console: a Streamlit app over the admin API and the monitor."""
