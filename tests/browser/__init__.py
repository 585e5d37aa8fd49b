"""Browser tests: a real Chromium (Playwright) against `streamlit run app.py`."""
