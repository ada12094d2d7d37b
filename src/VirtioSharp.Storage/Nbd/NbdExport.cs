namespace VirtioSharp.Storage.Nbd;

/// <summary>What one successful handshake established: the export's size, transmission flags and size constraints.</summary>
internal sealed record NbdExport
{
    public required ulong Size { get; init; }
    public required ushort Flags { get; init; }
    public required bool Structured { get; init; }
    /// <summary>The server answered NBD_INFO_BLOCK_SIZE (else the defaults of "Size constraints" apply).</summary>
    public bool BlockSizeAdvertised { get; init; }
    public uint MinimumBlock { get; init; } = 1;
    public uint PreferredBlock { get; init; } = 4096;
    public uint MaximumPayload { get; init; } = NbdProtocol.DefaultMaxPayload;

    public bool Has(ushort flag) => (Flags & flag) != 0;

    /// <summary>
    /// The alignment this client keeps: the server's minimum, but at least 512 (a client may use tighter constraints
    /// than advertised, "Size constraints"); it is the logical block size the guest sees.
    /// </summary>
    public uint Alignment => Math.Max(MinimumBlock, 512u);

    /// <summary>Largest read/write payload per command: the server's maximum, capped by the option, in whole blocks.</summary>
    public uint PayloadLimit(uint optionMax)
    {
        uint max = Math.Min(MaximumPayload, Math.Max(optionMax, Alignment));
        return max / Alignment * Alignment;
    }
}
