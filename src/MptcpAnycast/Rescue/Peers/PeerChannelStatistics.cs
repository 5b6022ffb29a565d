namespace MptcpAnycast.Rescue.Peers;

/// <summary>
/// The channel's counters at one moment, for an operator's status command. Every received datagram ends in exactly
/// one of: a rejection (<see cref="Rejected(PeerMessageStatus)"/>), <see cref="InboundRateLimited"/>,
/// <see cref="QueriesReceived"/>, <see cref="AnswersOwned"/>, <see cref="AnswersNotOwned"/>,
/// <see cref="AnswersUnmatched"/> or <see cref="Faults"/>; so those add up to <see cref="DatagramsReceived"/>.
/// </summary>
internal sealed class PeerChannelStatistics
{
    private readonly long[] _rejected;

    internal PeerChannelStatistics(long[] values, long[] rejected)
    {
        DatagramsReceived = values[(int)PeerCounter.DatagramsReceived];
        QueriesReceived = values[(int)PeerCounter.QueriesReceived];
        InboundRateLimited = values[(int)PeerCounter.InboundRateLimited];
        AnswersSent = values[(int)PeerCounter.AnswersSent];
        AnswerSendFailures = values[(int)PeerCounter.AnswerSendFailures];
        HandlerFailures = values[(int)PeerCounter.HandlerFailures];
        AnswersOwned = values[(int)PeerCounter.AnswersOwned];
        AnswersNotOwned = values[(int)PeerCounter.AnswersNotOwned];
        AnswersUnmatched = values[(int)PeerCounter.AnswersUnmatched];
        QueriesSent = values[(int)PeerCounter.QueriesSent];
        OutboundRateLimited = values[(int)PeerCounter.OutboundRateLimited];
        QuerySendFailures = values[(int)PeerCounter.QuerySendFailures];
        QueriesTimedOut = values[(int)PeerCounter.QueriesTimedOut];
        ReceiveErrors = values[(int)PeerCounter.ReceiveErrors];
        Faults = values[(int)PeerCounter.Faults];
        _rejected = rejected;
    }

    /// <summary>Datagrams read from the sockets, good and bad.</summary>
    public long DatagramsReceived { get; }

    /// <summary>Authentic queries handed to the ownership handler.</summary>
    public long QueriesReceived { get; }

    /// <summary>Authentic queries dropped because their peer exceeded its rate.</summary>
    public long InboundRateLimited { get; }

    public long AnswersSent { get; }

    public long AnswerSendFailures { get; }

    /// <summary>Queries not answered because the ownership handler threw.</summary>
    public long HandlerFailures { get; }

    /// <summary>Answers "owned" that completed a pending query.</summary>
    public long AnswersOwned { get; }

    /// <summary>Answers "not owned" that completed a pending query.</summary>
    public long AnswersNotOwned { get; }

    /// <summary>Authentic answers matching no pending query: late (after a timeout or after another peer said "owned").</summary>
    public long AnswersUnmatched { get; }

    public long QueriesSent { get; }

    /// <summary>Queries not sent because this POP exceeded its outbound rate.</summary>
    public long OutboundRateLimited { get; }

    public long QuerySendFailures { get; }

    /// <summary>Queries sent whose answer did not come before the lookup's deadline.</summary>
    public long QueriesTimedOut { get; }

    /// <summary>Socket errors while receiving (the loop goes on).</summary>
    public long ReceiveErrors { get; }

    /// <summary>Datagrams whose handling threw unexpectedly: a bug; the loop goes on.</summary>
    public long Faults { get; }

    /// <summary>Datagrams dropped for <paramref name="status"/> (0 for <see cref="PeerMessageStatus.Ok"/>).</summary>
    public long Rejected(PeerMessageStatus status) => (uint)status < (uint)_rejected.Length ? _rejected[(int)status] : 0;

    public long RejectedTotal => _rejected.Sum();

    /// <summary>Every counter by name, rejections as <c>rejected.Reason</c>, for printing.</summary>
    public IEnumerable<KeyValuePair<string, long>> Entries()
    {
        yield return new(nameof(DatagramsReceived), DatagramsReceived);
        yield return new(nameof(QueriesReceived), QueriesReceived);
        yield return new(nameof(InboundRateLimited), InboundRateLimited);
        yield return new(nameof(AnswersSent), AnswersSent);
        yield return new(nameof(AnswerSendFailures), AnswerSendFailures);
        yield return new(nameof(HandlerFailures), HandlerFailures);
        yield return new(nameof(AnswersOwned), AnswersOwned);
        yield return new(nameof(AnswersNotOwned), AnswersNotOwned);
        yield return new(nameof(AnswersUnmatched), AnswersUnmatched);
        yield return new(nameof(QueriesSent), QueriesSent);
        yield return new(nameof(OutboundRateLimited), OutboundRateLimited);
        yield return new(nameof(QuerySendFailures), QuerySendFailures);
        yield return new(nameof(QueriesTimedOut), QueriesTimedOut);
        yield return new(nameof(ReceiveErrors), ReceiveErrors);
        yield return new(nameof(Faults), Faults);
        foreach (PeerMessageStatus status in Enum.GetValues<PeerMessageStatus>())
        {
            if (status != PeerMessageStatus.Ok)
            {
                yield return new($"rejected.{status}", Rejected(status));
            }
        }
    }

    public override string ToString() => string.Join(", ", Entries().Where(e => e.Value != 0).Select(e => $"{e.Key}={e.Value}"));
}

/// <summary>The channel's counters other than the rejections, as indexes into its array.</summary>
internal enum PeerCounter
{
    DatagramsReceived,
    QueriesReceived,
    InboundRateLimited,
    AnswersSent,
    AnswerSendFailures,
    HandlerFailures,
    AnswersOwned,
    AnswersNotOwned,
    AnswersUnmatched,
    QueriesSent,
    OutboundRateLimited,
    QuerySendFailures,
    QueriesTimedOut,
    ReceiveErrors,
    Faults,
}

/// <summary>The live counters: incremented from the receive threads and the query callers without locks.</summary>
internal sealed class PeerChannelCounters
{
    private readonly long[] _values = new long[Enum.GetValues<PeerCounter>().Length];
    private readonly long[] _rejected = new long[Enum.GetValues<PeerMessageStatus>().Length];

    public void Add(PeerCounter counter, long amount = 1) => Interlocked.Add(ref _values[(int)counter], amount);

    public void Reject(PeerMessageStatus status) => Interlocked.Increment(ref _rejected[(int)status]);

    public PeerChannelStatistics Snapshot()
    {
        long[] values = new long[_values.Length];
        long[] rejected = new long[_rejected.Length];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = Interlocked.Read(ref _values[i]);
        }

        for (int i = 0; i < rejected.Length; i++)
        {
            rejected[i] = Interlocked.Read(ref _rejected[i]);
        }

        return new PeerChannelStatistics(values, rejected);
    }
}
