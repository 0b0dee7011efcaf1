"""aiohttp routes: parse the dialect → run the pipeline → render. Handlers stay thin."""
