namespace MptcpAnycast.Lab.Tests.Infrastructure;

/// <summary>
/// A test that needs root and network namespaces. Skips with a reason when not root, unless
/// <c>MPTCP_ANYCAST_REQUIRE_LAB=1</c> (set by <c>.ci/run</c>): then it runs and fails, so CI can never skip it.
/// </summary>
public sealed class LabFactAttribute : FactAttribute
{
    public LabFactAttribute()
    {
        if (LabEnvironment.SkipReason is string reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>The <see cref="TheoryAttribute"/> counterpart of <see cref="LabFactAttribute"/>.</summary>
public sealed class LabTheoryAttribute : TheoryAttribute
{
    public LabTheoryAttribute()
    {
        if (LabEnvironment.SkipReason is string reason)
        {
            Skip = reason;
        }
    }
}

public static class LabEnvironment
{
    public static bool Required => Environment.GetEnvironmentVariable("MPTCP_ANYCAST_REQUIRE_LAB") == "1";

    public static bool IsRoot => Environment.UserName == "root" || Tmds.Linux.LibC.geteuid() == 0;

    /// <summary>Why lab tests cannot run here, or null. Never non-null when <see cref="Required"/>.</summary>
    public static string? SkipReason
    {
        get
        {
            if (Required)
            {
                return null;
            }

            if (!OperatingSystem.IsLinux())
            {
                return "lab tests need Linux network namespaces";
            }

            if (!IsRoot)
            {
                return "lab tests need root (ip netns); run as root, or set MPTCP_ANYCAST_REQUIRE_LAB=1 to make this a failure";
            }

            return null;
        }
    }
}
