"""The pipeline engine: pipeline files, states, planning, running and recovery.

The engine imports nothing from ``bot/`` or ``api/``; they subscribe to its events.
"""
