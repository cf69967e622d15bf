from advprune.cli import main

raise SystemExit(main())
