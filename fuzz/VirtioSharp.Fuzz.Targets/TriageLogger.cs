using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>With FUZZ_LOG=1 (triage with --replay) the back-end's log goes to stderr; while fuzzing it is discarded.</summary>
internal sealed class TriageLogger : ILogger
{
    public static ILogger Instance { get; } = Environment.GetEnvironmentVariable("FUZZ_LOG") == "1" ? new TriageLogger() : NullLogger.Instance;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Console.Error.WriteLine($"[{logLevel}] {formatter(state, exception)}");
}
