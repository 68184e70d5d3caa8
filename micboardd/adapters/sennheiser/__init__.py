"""Sennheiser adapters: SSCv2 (HTTPS + SSE), SSCv1 (JSON over UDP) and the G3/G4/2000 MCP (ASCII over UDP)."""
