"""The oldest and newest Kubernetes minor GKE serves, which the manifest tests validate against (kubernetes-validate).

GKE's release notes, "Current versions" table (the stored copy of late 2026,
https://docs.cloud.google.com/kubernetes-engine/docs/release-notes?authuser=77&hl=pt: Rapid default
1.36.4-gke.1082000): available minor versions Rapid 1.34 to 1.37, Regular 1.34 to
1.36, Stable 1.34 to 1.35, Extended 1.31 to 1.36. So 1.31 (Extended channel, 24 months of support) is the oldest a
cluster can run and 1.37 (Rapid) the newest; kubernetes-validate 1.37.0 ships schemas for 1.25 to 1.37, both ends
included. When GKE's table moves, move these (a test fails when kubernetes-validate lacks either).
"""

from __future__ import annotations

GKE_OLDEST = "1.31.0"
GKE_NEWEST = "1.37.0"
