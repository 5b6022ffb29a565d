namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// A wrong command line found only once the command runs (an interface that does not exist, a POP the lab does not
/// have): the program prints the message and the usage, and exits with 2, as for a parse error.
/// </summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The command could not do its job (not a wrong command line): its message goes to stderr, exit code 1.</summary>
internal sealed class CommandFailedException(string message) : Exception(message);
