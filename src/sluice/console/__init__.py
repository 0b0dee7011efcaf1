"""The web console's page, script and style, shipped as package data in ``static/`` (no CDN, no
fonts, no chart library: charts are inline SVG drawn by ``console.js``). Served by
``server/console_routes.py``."""
