"""Authoring tools for people who write the data: instruction lint, the review page (``review`` +
``review_page.html``) and ``medi add-source`` (``scaffold``). They read releases and the instruction files;
no stage imports them.
"""
