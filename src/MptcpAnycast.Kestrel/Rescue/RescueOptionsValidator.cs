using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using MptcpAnycast.Rescue;

namespace MptcpAnycast.Kestrel.Rescue;

/// <summary>
/// Checks <see cref="RescueOptions"/> when the host starts (<c>ValidateOnStart</c>), before any hosted service starts,
/// so that a bad rescue setting never leaves Kestrel listening. Nothing set at all passes (the rescue service then
/// warns that rescue is not configured); some settings without the required ones fail naming the missing keys; the
/// rest are <see cref="RescueOptions.Validate"/>'s rules.
/// </summary>
internal sealed class RescueOptionsValidator(IConfiguration? configuration = null) : IValidateOptions<RescueOptions>
{
    public ValidateOptionsResult Validate(string? name, RescueOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (name is not null && name != Options.DefaultName)
        {
            return ValidateOptionsResult.Skip; // the rescue service reads the default options only
        }

        if (RescueOptionsBinding.BindingProblem(options) is string problem)
        {
            return ValidateOptionsResult.Fail(problem);
        }

        IReadOnlyList<string> set = RescueOptionsBinding.SetKeys(options, configuration?.GetSection(RescueOptions.SectionName));
        if (set.Count == 0)
        {
            return ValidateOptionsResult.Success;
        }

        IReadOnlyList<string> missing = RescueOptionsBinding.MissingKeys(options);
        if (missing.Count > 0)
        {
            // A key the configuration gives but the callback emptied counts as missing, not as set.
            string[] given = [.. set.Where(k => !missing.Any(m => m.StartsWith($"{RescueOptions.SectionName}:{k}", StringComparison.OrdinalIgnoreCase)))];
            return ValidateOptionsResult.Fail(
                $"{RescueOptions.SectionName} is only partly set{(given.Length == 0 ? "" : $" ({string.Join(", ", given)})")}: {string.Join(", ", missing)} " +
                $"{(missing.Count == 1 ? "is" : "are")} missing; set {(missing.Count == 1 ? "it" : "them")} (docs/rescue.md), " +
                "or remove the section to run without rescue");
        }

        try
        {
            options.Validate();
            return ValidateOptionsResult.Success;
        }
        catch (RescueConfigurationException e)
        {
            return ValidateOptionsResult.Fail(e.Message);
        }
    }
}
