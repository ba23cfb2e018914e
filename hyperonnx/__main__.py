from hyperonnx.cli import main

main()
