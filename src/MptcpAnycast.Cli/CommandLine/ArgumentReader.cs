using System.Globalization;

namespace MptcpAnycast.Cli.CommandLine;

/// <summary>A wrong command line. The program prints the message and the usage, and exits with 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The command could not do its job (not a wrong command line): its message goes to stderr, exit code 1.</summary>
internal sealed class CommandFailedException(string message) : Exception(message);

/// <summary>
/// Reads <c>--name value</c>, <c>--name=value</c>, <c>--flag</c> and positional arguments, and fails with a
/// <see cref="UsageException"/> that names the bad argument. Every option a command reads must be declared, so
/// an unknown one is an error, not silently ignored.
/// </summary>
internal sealed class ArgumentReader
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    private readonly List<string> _positional = [];
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public ArgumentReader(IEnumerable<string> args, IReadOnlySet<string> flags, IReadOnlySet<string> valued)
    {
        using IEnumerator<string> e = args.GetEnumerator();
        while (e.MoveNext())
        {
            string arg = e.Current;
            if (arg == "--")
            {
                while (e.MoveNext())
                {
                    _positional.Add(e.Current);
                }

                break;
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                if (arg.StartsWith('-') && arg.Length > 1 && !char.IsDigit(arg[1]))
                {
                    throw new UsageException($"unknown option '{arg}'");
                }

                _positional.Add(arg);
                continue;
            }

            string name = arg;
            string? value = null;
            int eq = arg.IndexOf('=');
            if (eq > 0)
            {
                name = arg[..eq];
                value = arg[(eq + 1)..];
            }

            if (flags.Contains(name))
            {
                if (value is not null)
                {
                    throw new UsageException($"option '{name}' takes no value (got '{value}')");
                }
            }
            else if (valued.Contains(name))
            {
                if (value is null)
                {
                    if (!e.MoveNext())
                    {
                        throw new UsageException($"option '{name}' needs a value");
                    }

                    value = e.Current;
                }
            }
            else
            {
                throw new UsageException($"unknown option '{name}'");
            }

            if (!_options.TryAdd(name, value))
            {
                throw new UsageException($"option '{name}' is given twice");
            }
        }
    }

    public IReadOnlyList<string> Positional => _positional;

    public bool Flag(string name) => _options.ContainsKey(name);

    public string? Value(string name) => _options.TryGetValue(name, out string? v) ? v : null;

    public string Required(string name) => Value(name) ?? throw new UsageException($"option '{name}' is required");

    public T Choice<T>(string name, T defaultValue) where T : struct, Enum
    {
        string? value = Value(name);
        if (value is null)
        {
            return defaultValue;
        }

        if (Enum.TryParse(value, ignoreCase: true, out T parsed) && Enum.IsDefined(parsed) && !char.IsDigit(value[0]))
        {
            return parsed;
        }

        string names = string.Join("|", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()));
        throw new UsageException($"option '{name}' must be one of {names} (got '{value}')");
    }

    public int? Int(string name, int min, int max)
    {
        string? value = Value(name);
        if (value is null)
        {
            return null;
        }

        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed) || parsed < min || parsed > max)
        {
            throw new UsageException($"option '{name}' must be a whole number from {min} to {max} (got '{value}')");
        }

        return parsed;
    }

    /// <summary>Fails for any given option that <paramref name="what"/> does not take (options shared by several verbs).</summary>
    public void OnlyOptions(string what, params string[] allowed)
    {
        foreach (string name in _options.Keys)
        {
            if (Array.IndexOf(allowed, name) < 0)
            {
                throw new UsageException($"option '{name}' does not apply to '{what}'");
            }
        }
    }

    public void NoPositional()
    {
        if (_positional.Count > 0)
        {
            throw new UsageException($"unexpected argument '{_positional[0]}'");
        }
    }
}
