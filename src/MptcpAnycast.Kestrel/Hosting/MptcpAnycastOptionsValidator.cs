using Microsoft.Extensions.Options;

namespace MptcpAnycast.Kestrel.Hosting;

/// <summary>
/// Checks <see cref="MptcpAnycastOptions"/> when the host starts (<c>ValidateOnStart</c>), before Kestrel binds anything.
/// The rules are <see cref="MptcpAnycastSettings.Validate"/>'s: the first bad setting becomes the one failure, a message
/// that names the setting, the value and what is expected.
/// </summary>
internal sealed class MptcpAnycastOptionsValidator : IValidateOptions<MptcpAnycastOptions>
{
    public ValidateOptionsResult Validate(string? name, MptcpAnycastOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.BindingProblem is string problem)
        {
            return ValidateOptionsResult.Fail(problem);
        }

        try
        {
            MptcpAnycastSettings.Validate(options);
            return ValidateOptionsResult.Success;
        }
        catch (MptcpAnycastConfigurationException ex)
        {
            return ValidateOptionsResult.Fail(ex.Message);
        }
    }
}
