"""Source-code providers spoken to through their REST APIs: verify a token, list repositories, keep a
Pipeline's webhook registered; one :class:`~worker.scm.driver.Driver` per provider type."""
