"""Offline evaluation harness: question sets (`sets`, `converters`), runs (`runner`, `runfolder`), one
scorer per metric (`scoring`, `metrics`, `selective`), reports (`report`), the confidence fit's check
(`calibration`) and the retrieval ablation (`ablation`).

Layer 9: runs questions through the pipeline; only the server's export, the CLI and the page import it.
"""
