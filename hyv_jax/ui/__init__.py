"""The Gradio page (app.py serves it): a request form whose values become sample.py flags."""
