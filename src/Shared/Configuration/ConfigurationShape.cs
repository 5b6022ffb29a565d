using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace MptcpAnycast;

/// <summary>
/// What a section of settings may hold, checked before it is bound: the binder drops a key it does not know, a value
/// where it expects a list or an object, and a list or an object where it expects a value, all without a word (a
/// misspelt key, <c>"Peers": { ... }</c> or <c>"Port": [ 5000 ]</c> would leave the default in place). Keys are
/// matched in any case, as the binder matches them.
/// </summary>
internal abstract class ConfigurationShape
{
    /// <summary>One value: text, a number, true or false.</summary>
    public static ConfigurationShape Value { get; } = new ValueShape();

    /// <summary>Anything: a section another check owns.</summary>
    public static ConfigurationShape Any { get; } = new AnyShape();

    /// <summary>An object with these keys; <paramref name="noun"/> names its keys in an error ("rescue setting").</summary>
    public static ConfigurationShape Object(string noun, params (string Key, ConfigurationShape Shape)[] keys) => new ObjectShape(noun, keys);

    /// <summary>
    /// A list (entries numbered from 0) of <paramref name="entry"/>; <paramref name="example"/> is what follows an
    /// entry's number in a key and value: <c>=192.0.2.100</c>, <c>:Name=pop-b</c>.
    /// </summary>
    public static ConfigurationShape List(ConfigurationShape entry, string example) => new ListShape(entry, example);

    /// <summary>The first place where <paramref name="section"/> differs from this shape, named by <paramref name="path"/>, or null.</summary>
    public abstract string? Check(IConfiguration section, string path);

    /// <summary>The text as it is quoted in a message: at most 60 characters, so that a pasted blob does not fill the screen.</summary>
    internal static string Quote(string value) => value.Length <= 60 ? $"'{value}'" : $"'{value[..57]}...' ({value.Length} characters)";

    private static string Environment(string path) => path.Replace(":", "__", StringComparison.Ordinal);

    private sealed class ValueShape : ConfigurationShape
    {
        public override string? Check(IConfiguration section, string path) =>
            section.GetChildren().Any() ? $"{path} takes one value, not a list or an object" : null;
    }

    private sealed class AnyShape : ConfigurationShape
    {
        public override string? Check(IConfiguration section, string path) => null;
    }

    private sealed class ObjectShape(string noun, (string Key, ConfigurationShape Shape)[] keys) : ConfigurationShape
    {
        public override string? Check(IConfiguration section, string path)
        {
            if (section is IConfigurationSection { Value: { Length: > 0 } value } && !section.GetChildren().Any())
            {
                return $"{path} {Quote(value)} is one value; it is an object with {string.Join(", ", keys.Select(k => k.Key))}";
            }

            foreach (IConfigurationSection child in section.GetChildren())
            {
                int known = Array.FindIndex(keys, k => string.Equals(k.Key, child.Key, StringComparison.OrdinalIgnoreCase));
                if (known < 0)
                {
                    return $"{path}:{child.Key} is not a {noun}; the {noun}s are {string.Join(", ", keys.Select(k => k.Key))}";
                }

                if (keys[known].Shape.Check(child, $"{path}:{child.Key}") is string problem)
                {
                    return problem;
                }
            }

            return null;
        }
    }

    private sealed class ListShape(ConfigurationShape entry, string example) : ConfigurationShape
    {
        public override string? Check(IConfiguration section, string path)
        {
            // An empty JSON list reads as an empty value.
            if (section is IConfigurationSection { Value: { Length: > 0 } value } && !section.GetChildren().Any())
            {
                int equals = example.IndexOf('=', StringComparison.Ordinal);
                string environment = $"{Environment(path)}__0{Environment(example[..equals])}{example[equals..]}";
                return $"{path} {Quote(value)} is a list: write {path}:0{example} (command line --{path}:0{example}, environment "
                    + $"{environment}), and :1 for a second entry";
            }

            foreach (IConfigurationSection child in section.GetChildren())
            {
                if (!int.TryParse(child.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    return $"{path} is a list, not an object ('{child.Key}' is not an entry's number): in JSON write "
                        + $"\"{path.Split(':')[^1]}\": [ ... ], elsewhere number the entries {path}:0, {path}:1";
                }

                if (entry.Check(child, $"{path}:{child.Key}") is string problem)
                {
                    return problem;
                }
            }

            return null;
        }
    }
}
