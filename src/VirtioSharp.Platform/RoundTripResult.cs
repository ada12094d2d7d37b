using VirtioSharp.Dma;

namespace VirtioSharp.Platform;

public sealed record RoundTripResult
{
    public required string Name { get; init; }
    public required DmaDecision Decision { get; init; }
    public string Ops { get; init; } = "-";
    public int Attempted { get; init; }
    public int Completed { get; init; }
    public int Verified { get; init; }
    public long IommuFaults { get; init; }
    public long BounceBytes { get; init; }
    public long ProtectionViolations { get; init; }
    public long IotlbHits { get; init; }
    public long IotlbMisses { get; init; }
    public bool Hung { get; init; }
    public string? Error { get; init; }
    public IReadOnlyList<string> Evidence { get; init; } = [];

    public bool Clean => !Decision.Refused && Error is null && !Hung && Verified == Attempted && Attempted > 0;
    public string Outcome => Decision.Refused ? "refused"
        : Hung ? "hang"
        : Error is not null ? "error"
        : Verified == Completed && Completed == Attempted ? "ok"
        : "corrupt";
}
