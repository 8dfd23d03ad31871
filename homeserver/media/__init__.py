"""The media repository: files on disk named by content (``files.py``), thumbnails made with
Pillow (``thumbnailer.py``), other servers' media fetched over federation and cached
(``remote.py``), what may be served inline (``headers.py``) and the service the HTTP handlers
call (``repository.py``)."""
