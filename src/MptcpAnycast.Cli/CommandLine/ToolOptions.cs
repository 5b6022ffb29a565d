using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Cli.CommandLine;

/// <summary>
/// The options of every command, built one way: a description that says the unit, the range and the default; a value
/// check whose message names the option and the bad value (<c>option '--count' must be ... (got '0')</c>), so a bad
/// value is a parse error (exit 2) before the command touches the host.
/// </summary>
internal static class ToolOptions
{
    /// <summary>A switch without a value. Given twice is an error, as any other option given twice.</summary>
    public static Option<bool> Flag(string name, string description)
    {
        var option = new Option<bool>(name) { Description = description, Arity = ArgumentArity.Zero };
        option.Validators.Add(GivenOnce);
        return option;
    }

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/> with a default (shown by --help).</summary>
    public static Option<int> Int(string name, string unit, string description, int min, int max, int defaultValue) => new(name)
    {
        Description = $"{description} {Range(min, max)}.",
        HelpName = unit,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result => ParseInt(result, min, max) ?? 0,
    };

    /// <summary>
    /// A whole number from <paramref name="min"/> to <paramref name="max"/>, or null when not given; --help shows
    /// <paramref name="whenAbsent"/> as the default (what the command does without it).
    /// </summary>
    public static Option<int?> OptionalInt(string name, string unit, string description, int min, int max, string whenAbsent) => new(name)
    {
        Description = $"{description} {Range(min, max)}. {DefaultText(whenAbsent)}",
        HelpName = unit,
        CustomParser = result => ParseInt(result, min, max),
    };

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/> that must be given.</summary>
    public static Option<int?> RequiredInt(string name, string unit, string description, int min, int max) => new(name)
    {
        Description = $"{description} {Range(min, max)}.",
        HelpName = unit,
        Required = true,
        CustomParser = result => ParseInt(result, min, max),
    };

    /// <summary>A text value (a file, a name), or null when not given (--help shows <paramref name="whenAbsent"/> as the default).</summary>
    public static Option<string?> Text(string name, string helpName, string description, string? whenAbsent = null) =>
        new(name) { Description = whenAbsent is null ? description : $"{description} {DefaultText(whenAbsent)}", HelpName = helpName };

    /// <summary>A default that is not a value (<c>no limit</c>), written as --help writes a value's: <c>[default: no limit]</c>.</summary>
    public static string DefaultText(string whenAbsent) => $"[default: {whenAbsent}]";

    /// <summary>An IPv4 or IPv6 address as <see cref="IPAddressText.TryParseStrict"/> reads it, or null when not given.</summary>
    public static Option<IPAddress?> Address(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "address",
        CustomParser = result => ParseAddress(result, NameOf(result)),
    };

    /// <summary>The positional ADDRESS of the <c>endpoints</c> commands.</summary>
    public static Argument<IPAddress?> AddressArgument(string description, ArgumentArity arity) => new("ADDRESS")
    {
        Description = description,
        Arity = arity,
        CustomParser = result => ParseAddress(result, "ADDRESS"),
    };

    /// <summary>
    /// For a command's validator: the value of <paramref name="option"/> when it is given and its own check passed;
    /// false when it is not given or failed (its own error is reported already). System.CommandLine throws when a
    /// validator reads a value that failed.
    /// </summary>
    public static bool TryGetValue<T>(System.CommandLine.Parsing.CommandResult command, Option<T> option, out T? value)
    {
        value = default;
        if (command.GetResult(option) is null)
        {
            return false;
        }

        try
        {
            value = command.GetValue(option);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>For an argument's validator: its value when its own check passed; false when that failed (its error is reported).</summary>
    public static bool TryGetValue<T>(ArgumentResult argument, out T? value)
    {
        value = default;
        try
        {
            value = argument.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>How messages call what is being parsed: <c>option '--count'</c>, or an argument's name.</summary>
    internal static string NameOf(ArgumentResult result) =>
        result.Parent is OptionResult option ? $"option '{option.Option.Name}'" : result.Argument.Name;

    private static string Range(int min, int max) =>
        string.Create(CultureInfo.InvariantCulture, $"{min} to {max}");

    /// <summary>Reads one whole number; adds the error and returns null when it is not one or is out of range.</summary>
    private static int? ParseInt(ArgumentResult result, int min, int max)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value) && value >= min && value <= max)
        {
            return value;
        }

        result.AddError($"{NameOf(result)} must be a whole number from {Range(min, max)} (got '{text}')");
        return null;
    }

    private static IPAddress? ParseAddress(ArgumentResult result, string what)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (IPAddressText.TryParseStrict(text, out IPAddress? address))
        {
            return address;
        }

        result.AddError($"{what} must be an IPv4 or IPv6 address (got '{text}'): IPv4 is four decimal numbers without leading zeros, IPv6 has no brackets, port or scope");
        return null;
    }

    private static void GivenOnce(OptionResult result)
    {
        if (result.IdentifierTokenCount > 1)
        {
            result.AddError($"option '{result.Option.Name}' is given twice");
        }
    }
}

/// <summary>
/// One of an enum's values, spelled as on the command line (<c>shared-ipv4</c>, <c>server</c>: <see cref="LabNames"/>),
/// case-insensitive, with tab completion of the spellings. The parsed value stays a spelling so that --help shows the
/// default as a user types it; <see cref="Get"/> gives the enum value.
/// </summary>
internal sealed class ChoiceOption<T> : Option<string?> where T : struct, Enum
{
    /// <param name="name">The option, <c>--unicast</c>.</param>
    /// <param name="description">What it chooses; --help adds the choices and the default.</param>
    /// <param name="defaultValue">The value when not given; null: none (<see cref="Get"/> returns null).</param>
    /// <param name="helpName">What --help shows after the name; null: the choices (<c>a|b|c</c>). A long list of
    /// choices reads better in the description.</param>
    public ChoiceOption(string name, string description, T? defaultValue, string? helpName = null) : base(name)
    {
        Description = description;
        HelpName = helpName ?? LabNames.All<T>();
        if (defaultValue is T value)
        {
            DefaultValueFactory = _ => LabNames.Of(value);
        }

        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (LabNames.TryParse(text, out T _))
            {
                return text;
            }

            result.AddError($"{ToolOptions.NameOf(result)} must be one of {LabNames.All<T>()} (got '{text}')");
            return null;
        };
        CompletionSources.Add([.. Enum.GetValues<T>().Select(v => LabNames.Of(v))]);
    }

    /// <summary>The chosen value, the default when not given, or null when there is no default.</summary>
    public T? Get(ParseResult parse) => parse.GetValue(this) is string text && LabNames.TryParse(text, out T value) ? value : null;
}
