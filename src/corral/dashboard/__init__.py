"""The web dashboard at ``/ui``: server-rendered pages (Jinja2) over the same services as the API, with htmx for
the live parts and Chart.js for the charts, both bundled under ``static/vendor`` (no CDN)."""
