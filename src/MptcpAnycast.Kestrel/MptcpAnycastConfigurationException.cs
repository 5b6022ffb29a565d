namespace MptcpAnycast.Kestrel;

/// <summary>A setting of <see cref="MptcpAnycastOptions"/> is invalid, or the host cannot do what it asks. Thrown at start-up,
/// before anything is bound; the message names the setting and the value.</summary>
public sealed class MptcpAnycastConfigurationException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public MptcpAnycastConfigurationException(string setting, string? value, string problem, Exception? inner = null)
        : base($"MptcpAnycast:{setting} = '{value}': {problem}", inner)
    {
        Setting = setting;
        Value = value;
    }

    /// <summary>The setting's name, e.g. <c>UnicastAddresses</c>.</summary>
    public string Setting { get; }

    /// <summary>The offending value as configured.</summary>
    public string? Value { get; }
}
