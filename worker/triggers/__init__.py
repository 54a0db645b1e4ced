"""Cron and SCM-polling triggers as Temporal Schedules: the reconciler, what it builds, their activities."""
