"""The PostgreSQL store: the :class:`~agentd.store.base.Store` contract on a shared database (psycopg 3).

``store.py`` is the store and its transactions, ``leases.py`` the leases (rows, advisory locks, the database clock),
``registry.py`` the daemons and the journal, ``notify.py`` the wake-ups (LISTEN/NOTIFY), ``migrations.py`` the
versioned schema (the ``sql/`` files). Nothing here is imported unless a ``postgresql://`` store is opened.
"""
