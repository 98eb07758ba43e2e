from ssdd.cli import main

raise SystemExit(main())
