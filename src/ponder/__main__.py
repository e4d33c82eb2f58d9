from ponder.cli.main import main

raise SystemExit(main())
