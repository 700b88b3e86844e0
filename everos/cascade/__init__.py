"""The cascade: from markdown under the root to the search index, through a leased queue."""
