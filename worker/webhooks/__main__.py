from worker.webhooks.main import main

raise SystemExit(main())
