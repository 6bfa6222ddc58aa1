"""The Hexagon operator: a kopf operator that runs HexagonNode gateway fleets and heals them."""
