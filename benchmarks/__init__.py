"""Side-by-side measurements of wavespeed-async against a raw aiohttp floor."""
