namespace MptcpAnycast.Lab;

/// <summary>One client's samples for the plot, and when its stream was first seen failed.</summary>
internal sealed class DemoTimeline
{
    private readonly List<DemoSample> _samples = [];
    private double? _diedAt;

    /// <summary>Adds a sample, up to the first one that sees the stream failed: the line ends where the client died.</summary>
    public void Sample(double seconds, StreamProbe probe)
    {
        if (_diedAt is not null)
        {
            return;
        }

        _samples.Add(new DemoSample(seconds, probe.Received));
        if (probe.Error is not null)
        {
            _diedAt = seconds;
        }
    }

    public DemoClientRecord Record(StreamProbe probe, string result) => new(probe.Name, [.. _samples], _diedAt, result);
}
