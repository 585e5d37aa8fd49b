"""Streamlit helpers shared by the pages: session-state keys, the sidebar model picker, cached calls."""
