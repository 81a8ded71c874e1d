"""Turning pages into HTML: Jinja (jinja.py), Markdown (markdown.py), KaTeX (katex.py with katex_server.js), and the
page layout, static files and search hints (layout.py); the math placeholders are site_build/mathslots.py."""
