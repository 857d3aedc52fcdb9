"""Write cnnexport/catalog.json from the model registry (run after adding or changing a model).

    python scripts/model_catalog.py
"""

import json

from cnnexport._atomic import atomic_path
from cnnexport.catalog import PATH, from_registry

if __name__ == "__main__":
    with atomic_path(PATH) as tmp:
        tmp.write_text(json.dumps(from_registry(), indent=1) + "\n")
    print(f"wrote {PATH}")
