namespace VirtioSharp.Tests;

/// <summary>
/// The fuzz targets count this process's descriptors before and after each input to catch leaks; run alone so other
/// tests' sockets and memfds are not counted as theirs.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FuzzReplayCollection
{
    public const string Name = "fuzz replay";
}
