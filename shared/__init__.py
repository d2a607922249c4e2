"""CI governance for Azure Machine Learning: the package every runbook imports.

The house plan (docs/architecture.md; tests/test_architecture.py enforces it):

- **foundation**, flat: ``models.py`` (records, outcome words, ids, money), ``report.py`` (run
  reports), ``settings.py`` (the settings document and scope), ``sections.py`` (every settings
  section as data, one registry), ``tags.py`` (the exemption tag format), ``times.py`` (instants and
  time zones), ``errors.py`` (every error raised on purpose). Imports only itself.
- **ports**, one folder per external system: ``azure/`` (auth, errors, ml_gateway, tag_writer,
  discovery, bulk, pacing), ``automation/`` (args, webhook, output), ``teams/`` (cards, client,
  inbound), ``pricing/`` (client, cost). The only modules that import ``azure.*``, ``requests`` or
  ``jinja2``; they raise :mod:`shared.errors` types and never import a capability.
- **capabilities**, one folder per runbook with the same inner names: ``stop/``, ``start/``,
  ``warning/``, ``exemption/``, ``create/``, each with ``policy.py`` (pure rules) and ``run.py``
  (orchestration), and ``request.py`` (pure) where the runbook takes a request. A capability imports
  the foundation and ports; another capability only where the domain needs it (the warning predicts
  the stop sweep and offers the exemption request).
- **runbooks** (``runbooks/``) import the foundation, ``automation/``, ``azure/auth``,
  ``azure/ml_gateway`` and their own capability.
"""
