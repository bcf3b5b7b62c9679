"""`lsc demo`: a Gradio page that runs one image through the study runner and shows it step by step."""
