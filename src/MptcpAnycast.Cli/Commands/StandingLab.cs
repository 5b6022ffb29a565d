using MptcpAnycast.Cli.CommandLine;
using MptcpAnycast.Lab;

namespace MptcpAnycast.Cli.Commands;

/// <summary>
/// What <c>lab up</c>, <c>lab flip</c>, <c>lab status</c> and <c>lab down</c> do with a lab that stays up between
/// commands (its state file names it by prefix).
/// </summary>
internal static class StandingLab
{
    /// <summary><c>lab up</c>: builds the lab and leaves it up; with <paramref name="rescueTool"/>, a detached rescue agent in every POP.</summary>
    public static int Up(LabOptions options, ToolCommand? rescueTool, TextWriter output)
    {
        LabTopology lab = LabTopology.Up(options);
        if (rescueTool is not null)
        {
            try
            {
                LabRescue.StartAsync(lab, rescueTool, detached: true).GetAwaiter().GetResult().Dispose();
            }
            catch
            {
                lab.Down();
                throw;
            }
        }

        output.WriteLine($"lab {options.Prefix} is up: {options}");
        output.WriteLine($"  client  {lab.Client.Name,-24} {lab.Plan.Client4}, {lab.Plan.Client6}");
        output.WriteLine($"  router  {lab.Router.Name,-24} anycast {lab.Plan.Anycast4}, {lab.Plan.Anycast6} -> POP {lab.Active}");
        foreach (LabPop pop in lab.Pops)
        {
            output.WriteLine($"  POP {pop.Id}   {pop.Namespace.Name,-24} {pop.Link4}, {pop.Link6}; announces {(pop.Announced.Count == 0 ? "nothing" : string.Join(", ", pop.Announced))}");
        }

        if (lab.StripMechanism is not null)
        {
            output.WriteLine($"  MPTCP option stripped on the router with: {lab.StripMechanism}");
        }

        if (rescueTool is not null)
        {
            output.WriteLine($"  rescue agent running in every POP until lab down (status: mptcp-anycast rescue status --dir {LabRescue.StatusDirectoryOf(options.Prefix)}; logs in {LabRescue.DirectoryOf(options.Prefix)})");
        }

        string choose = lab.Pops.Count > LabOptions.MinPops ? $" [--to {string.Join("|", lab.Pops.Select(p => LabNames.Of(p.Id)))}]" : "";
        output.WriteLine($"Run a command inside: ip netns exec {lab.Client.Name} <command>. Next: mptcp-anycast lab flip --prefix {options.Prefix}{choose}");
        return 0;
    }

    /// <summary>
    /// <c>lab flip</c>: to POP <paramref name="to"/>, or without it to the next POP (A → B → C → A). A POP the lab does not
    /// have is a usage error (exit 2) that names <paramref name="toText"/>; the POP already active changes nothing (exit 0).
    /// </summary>
    public static int Flip(string? prefix, LabPopId? to, string? toText, TextWriter output)
    {
        LabTopology lab = Existing(prefix);
        LabPopId from = lab.Active;
        string anycast = $"{lab.Plan.Anycast4}, {lab.Plan.Anycast6}";
        if (to is LabPopId target)
        {
            if (!lab.HasPop(target))
            {
                string pops = string.Join("|", lab.Pops.Select(p => LabNames.Of(p.Id)));
                throw new UsageException($"option '--to' must be one of {pops} for lab {lab.Options.Prefix}, which has {lab.Pops.Count} POPs (got '{toText}')");
            }

            if (!lab.FlipTo(target))
            {
                output.WriteLine($"lab {lab.Options.Prefix}: anycast {anycast} already points at POP {target}; nothing changed");
                return 0;
            }
        }
        else
        {
            lab.Flip();
        }

        output.WriteLine($"lab {lab.Options.Prefix}: anycast {anycast} moved from POP {from} to POP {lab.Active}");
        return 0;
    }

    public static int Status(string? prefix, TextWriter output)
    {
        output.Write(Existing(prefix).Status());
        return 0;
    }

    public static int Down(string? prefix, TextWriter output)
    {
        IReadOnlyList<string> prefixes = prefix is not null ? [prefix] : LabState.Prefixes();
        if (prefixes.Count > 1)
        {
            throw new UsageException($"several labs exist ({string.Join(", ", prefixes)}): choose one with --prefix");
        }

        if (prefixes.Count == 0)
        {
            output.WriteLine("no lab to remove");
            return 0;
        }

        IReadOnlyList<string> removed = LabTopology.Down(prefixes[0]);
        output.WriteLine(removed.Count == 0
            ? $"lab {prefixes[0]}: nothing left to remove"
            : $"lab {prefixes[0]}: removed {string.Join(", ", removed)}");
        return 0;
    }

    private static LabTopology Existing(string? prefix)
    {
        if (prefix is null)
        {
            IReadOnlyList<string> prefixes = LabState.Prefixes();
            prefix = prefixes.Count switch
            {
                0 => throw new InvalidOperationException("no lab is up; start one with 'mptcp-anycast lab up'"),
                1 => prefixes[0],
                _ => throw new UsageException($"several labs exist ({string.Join(", ", prefixes)}): choose one with --prefix"),
            };
        }

        return LabTopology.Load(prefix) ?? throw new InvalidOperationException($"no lab with prefix '{prefix}' (no {LabState.PathFor(prefix)}); start one with 'mptcp-anycast lab up --prefix {prefix}'");
    }
}
