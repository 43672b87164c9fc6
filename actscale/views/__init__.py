"""What a stored run shows: tables, figures, the report and the panels each method draws (no model needed)."""
